from posejax import baselines


def test_mean_pose_scores_badly_on_synthetic_data(smoke_config, smoke_builder, smoke_data_dir):
  config = smoke_config('smoke')
  config.dataset.data_dir = smoke_data_dir
  metrics = baselines.mean_pose_metrics(config, smoke_builder)
  assert metrics['AP'] < 0.2
  # The mean pose is not nonsense either: some keypoints land near the truth.
  assert 0.0 < metrics['PCK@0.1'] < 0.6

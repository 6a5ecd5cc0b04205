"""What a study is, without torch: the manifest, the job configs, the training strategies,
the plan of jobs with their hashed ids, and the plan's design check."""

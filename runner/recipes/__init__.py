"""What a job does, composed from runner.ml and runner.data: a training job
(train_job.run_job, the executors' default job function), the RQ2 held-out evaluation, the
RQ3 quantized evaluation and the RQ4 task similarity."""

"""Object storage: ``s3://bucket/prefix`` inputs downloaded before a run, outputs uploaded after it."""

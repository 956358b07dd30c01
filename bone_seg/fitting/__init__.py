"""What ``bone-fit`` does besides training: the held-out fold's prediction and scores
(:mod:`.test_fold`), a fit inside a SLURM job (:mod:`.slurm_job`: job-id tags, ranks, resuming
after a requeue) and ``publish_to=`` (:mod:`.publish`: the best weights copied atomically into the
pretrained cache). Nothing is imported here."""

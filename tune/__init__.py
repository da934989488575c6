"""Hyperparameter studies of the SMoE-VAE on Ray Tune and Optuna.

spec.py reads and validates a study spec, space.py builds its search space, searcher and scheduler,
trainable.py runs one trial through smoe.train.fit, study.py runs and resumes the Tuner, and
run_study.py is the command line.
"""

from lowshot.evaluation.metrics import classification_report, mean_ci

__all__ = ["classification_report", "mean_ci"]

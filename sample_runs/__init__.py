"""Real runs recorded by LiveMonitor on scikit-learn's digits; recreate them with `python -m sample_runs.generate`."""

"""reelay: index large video corpora with deep learning on Ray."""

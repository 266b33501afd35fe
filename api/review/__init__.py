"""Predictions flagged for a person: listing them and recording a person's answer, which
corrects the job's visible result (`store.ReviewStore`)."""

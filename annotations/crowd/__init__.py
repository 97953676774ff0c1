"""Crowd platforms (MTurk, Prolific, manual) behind one provider interface: launch, sync, review, pay."""

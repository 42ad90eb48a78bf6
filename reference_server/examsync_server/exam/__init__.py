"""The exam itself: the plan import (models.py), its lifecycle as a state table (plan_status.py,
lifecycle.py), stages and their clocks (stages.py, stage_moves.py, stage_timer.py), packages
and the catalog of a started plan's questions, and what candidates see of a plan (views.py)."""

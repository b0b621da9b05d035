"""The 68 points' 300-W grouping (Sagonas et al.; 0-based indices), for viewers that draw each part
as its own line: closed outlines for the eyes and lips, open ones for the rest."""

from __future__ import annotations

# (name, first index, end index (exclusive), closed)
PARTS_68 = (
    ("jaw", 0, 17, False),
    ("right_eyebrow", 17, 22, False),
    ("left_eyebrow", 22, 27, False),
    ("nose_bridge", 27, 31, False),
    ("nose_lower", 31, 36, False),
    ("right_eye", 36, 42, True),
    ("left_eye", 42, 48, True),
    ("outer_lips", 48, 60, True),
    ("inner_lips", 60, 68, True),
)


def parts(n_points: int):
    """PARTS_68 for 68-point faces; one open part "points" for any other scheme."""
    return PARTS_68 if n_points == 68 else (("points", 0, n_points, False),)

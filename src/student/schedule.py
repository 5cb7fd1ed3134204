"""The student's label schedule: where its training labels on unlabelled pixels come from.

The student owns it (:attr:`~src.student.model.DenseClipPlus.label_schedule`); callbacks only
move it: :class:`~src.student.switch.PseudoLabelSwitch` switches from the teacher's labels to
the student's own (the paper's Algorithm 1), :class:`~src.student.drift.DriftGuard` holds the
switch and names classes that fall back to the teacher's labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class LabelSchedule:
    """Teacher labels until :meth:`switch`, the student's own labels after, unless
    :meth:`hold` keeps the teacher's; after the switch the :attr:`fallback_classes` keep the
    teacher's label on their unlabelled pixels."""

    switched: bool = False  #: the switch to self-training happened
    held: bool = False  #: teacher labels although switched (the drift guard's hold)
    fallback_classes: list[int] = field(default_factory=list)  #: classes kept on the teacher

    def switch(self, switched: bool = True) -> None:
        """Self-training from now on (``False``: back to the teacher's labels, on restore)."""
        self.switched = bool(switched)

    def hold(self, held: bool = True) -> None:
        """Keep (``True``) or release (``False``) the teacher's labels after the switch."""
        self.held = bool(held)

    def fall_back(self, classes: Sequence[int]) -> None:
        """The classes whose unlabelled pixels keep the teacher's label during self-training."""
        self.fallback_classes = [int(c) for c in classes]

    @property
    def self_labels(self) -> bool:
        """Whether training labels come from the student: switched and not held."""
        return self.switched and not self.held

"""Training callbacks: the teacher -> self-label switch and validation pictures."""

from src.callbacks.pseudo_label_switch import PseudoLabelSwitch
from src.callbacks.validate_at_end import ValidateAtEnd
from src.callbacks.validation_images import ValidationImages
from src.callbacks.validation_report import ValidationReport

__all__ = ["PseudoLabelSwitch", "ValidateAtEnd", "ValidationImages", "ValidationReport"]

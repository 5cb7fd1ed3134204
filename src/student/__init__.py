"""DenseCLIP+, the student: backbones, decoders, the LightningModule that distils the frozen
teacher, its validation, the teacher -> self-label switch and the training callbacks."""

from src.student.callbacks import FlushDenormals, ValidateAtEnd, ValidationImages, ValidationReport
from src.student.checkpoint import load_student
from src.student.drift import DriftGuard
from src.student.model import DenseClipPlus
from src.student.switch import PseudoLabelSwitch

__all__ = [
    "DenseClipPlus",
    "DriftGuard",
    "FlushDenormals",
    "PseudoLabelSwitch",
    "ValidateAtEnd",
    "ValidationImages",
    "ValidationReport",
    "load_student",
]

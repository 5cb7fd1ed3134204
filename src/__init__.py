"""DenseCLIP Lightning: annotation-free semantic segmentation from CLIP."""

__version__ = "0.1.0"

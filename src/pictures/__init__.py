"""Pictures: one palette, overlays with legends, confusion matrices, grids, validation panels."""

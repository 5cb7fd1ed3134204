"""Fixtures shared by the teacher tests: a small random proxy ViT standing in for DINO."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from src.teacher import proxy as proxy_module


@pytest.fixture(scope="module")
def tiny_proxy(tmp_path_factory) -> Path:
    """A small timm ViT (random, fp16 file) to stand in for the DINO proxy of ProxyCLIP and
    CorrCLIP; registered as proxy ``tiny_test`` by :func:`proxies`."""
    import timm

    torch.manual_seed(3)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    path = tmp_path_factory.mktemp("proxy") / "tiny_proxy.pth"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    return path


@pytest.fixture()
def proxies(monkeypatch, tiny_proxy: Path) -> Path:
    """Proxy ``tiny_test`` registered for the test; its weights file."""
    spec = proxy_module.ProxySpec("vit_tiny_patch16_224", "a test ViT-Ti/16", "tiny.pth")
    monkeypatch.setitem(proxy_module.PROXIES, "tiny_test", spec)
    return tiny_proxy

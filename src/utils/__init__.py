"""Entry-point plumbing (instantiate, task wrapper, hyper-parameters) and file helpers."""

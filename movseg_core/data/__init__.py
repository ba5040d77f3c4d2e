"""Dataset readers and generators (NYUv2, synthetic scenes, ...)."""

"""MOVSeg core: geometry, CLIP, proposals, segmenter, training and evaluation.

Pure Python/PyTorch; never imports rclpy (a test checks ``sys.modules``).
"""
__version__ = "0.1.0"

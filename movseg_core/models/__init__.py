"""MOVSeg stage-1 models: RGB+X MaskFormer proposal generator (see :mod:`.maskformer`)."""
from .checkpoint import CHECKPOINT_FORMAT, export_checkpoint, load_checkpoint
from .fusion import FUSION_MODES, Fusion
from .maskformer import (
    MODEL_CONFIGS,
    MODEL_X_MODALITIES,
    MaskFormerConfig,
    RGBXMaskFormer,
    create_model,
    semantic_inference,
)
from .proposer import Proposals, TrainedProposer

__all__ = [
    "CHECKPOINT_FORMAT", "FUSION_MODES", "Fusion", "MODEL_CONFIGS", "MaskFormerConfig", "RGBXMaskFormer",
    "Proposals", "TrainedProposer", "MODEL_X_MODALITIES", "create_model", "export_checkpoint", "load_checkpoint",
    "semantic_inference",
]

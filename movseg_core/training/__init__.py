"""MOVSeg training: matcher, criterion (Eq. 1), CLIP-X adaptation, mask prompt tuning, engine."""

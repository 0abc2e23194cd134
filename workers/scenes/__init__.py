"""Scene detection with CLIP zero-shot prompts.

`prompts` (prompt set from model_cards/scenes.yaml) is light. `encoder` and `scorer` import torch
lazily: only the pipeline's model code pays for it.
"""

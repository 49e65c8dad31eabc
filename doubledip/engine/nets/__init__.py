"""The generators: the skip U-Net of ALGORITHM.md section 2 (``unet``) and its layers, each a
same-function fast path of a PyTorch op on channels-last CPU data (``norm``: BatchNorm fused with
LeakyReLU; ``padding``: reflection padding; ``upsample``: bilinear upsampling; ``pointwise``: 1x1
convolutions as one matrix product; ``memory``: low-memory recomputation helpers)."""

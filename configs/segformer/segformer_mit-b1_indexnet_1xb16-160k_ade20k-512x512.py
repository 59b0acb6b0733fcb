# The FADE authors' layout: batch 16 on one GPU (same total batch and learning rate as 8 x 2).
_base_ = './segformer_mit-b1_indexnet_8xb2-160k_ade20k-512x512.py'

train_dataloader = dict(batch_size=16)

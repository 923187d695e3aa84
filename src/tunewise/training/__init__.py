"""Training weights: the SFT loop (`training.loop`: prompt/completion pairs, loss on the answer only,
length-bucketed batches, checkpoints) and its epochs launched on several processes (`training.distributed`).
It reads only `TrainSettings`; the fine-tune arms (`arms.tuned`) decide what to train on."""

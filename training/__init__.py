"""Training: the expert SyncNet and the Wav2Lip generator (96/288/384), on LRS2-shaped data.

Modules, one job each:
  windows        where every 5-frame window and 16-step mel window starts (the alignment rules of docs/models.md §4)
  clips          one clip folder on disk: its frames, its audio, its cached mel
  dataset_index  reading train.txt/val.txt and scanning clips (skipping bad ones with one warning each)
  samples        SyncNet and Wav2Lip samples drawn deterministically from (seed, epoch, index)
  losses         BCE on cosine similarity, the sync loss, adversarial losses
  checkpoints    atomic checkpoints in the reference format plus what an exact resume needs
  distributed    torchrun / DDP set-up (gloo on CPU, NCCL on GPU) and the sampler that can skip ahead
  monitor        TensorBoard scalars and image grids, tqdm progress
  config         shared flags, JSON/YAML config files, printing the effective config
  loop           the step/eval/save/resume loop both trainers share
  syncnet_trainer / wav2lip_trainer   the two training loops
  sync_offset    the audio-offset sweep with a trained expert
CLIs: cli_syncnet (`train-syncnet`), cli_wav2lip (`train-wav2lip`), cli_sync_offset (`sync-offset`),
cli_check_data (`check-data`).
"""

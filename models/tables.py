"""Layer tables of every supported network, one string per layer, in state-dict order.

Notation (the building blocks of docs/models.md §5):

    "cin>cout kK sS pP"   conv block: Conv2d(bias) -> BatchNorm2d -> [+ input if R] -> activation
    "T..."                transposed-conv block: ConvTranspose2d(bias) -> BatchNorm2d -> activation
    "N..."                "nonorm" block (discriminators): Conv2d(bias) -> LeakyReLU(0.01)
    "P..."                bare nn.Conv2d (add "nobias" for bias=False)
    "s3,1"                stride 3 along H (mel bands / image rows), 1 along W (time / image columns)
    "op1"                 output_padding 1 (transposed convs only)
    "R"                   residual: act(BN(conv(x)) + x)
    "[relu]"              activation override for this layer (default is per network, see variants.py)

A string with "; " holds the layers of one nn.Sequential stage (e.g. one encoder block of a generator).
The numbers were checked against the reference classes' state dicts (tests/models/test_architectures.py).
"""
from __future__ import annotations

# Audio encoders -------------------------------------------------------------------------------------
# 13 layers, 1x80x16 -> 512x1x1 (wav2lip96, wav2lip288, wav2lip288_prelu2021)
AUDIO_ENCODER_GENERATOR = [
    "1>32 k3 s1 p1", "32>32 k3 s1 p1 R", "32>32 k3 s1 p1 R", "32>64 k3 s3,1 p1",
    "64>64 k3 s1 p1 R", "64>64 k3 s1 p1 R", "64>128 k3 s3 p1", "128>128 k3 s1 p1 R",
    "128>128 k3 s1 p1 R", "128>256 k3 s3,2 p1", "256>256 k3 s1 p1 R", "256>512 k3 s1 p0",
    "512>512 k1 s1 p0",
]
# 14 layers (one more residual 256 layer at index 11): syncnet96, syncnet288_prelu2021
AUDIO_ENCODER_SYNCNET = [
    "1>32 k3 s1 p1", "32>32 k3 s1 p1 R", "32>32 k3 s1 p1 R", "32>64 k3 s3,1 p1",
    "64>64 k3 s1 p1 R", "64>64 k3 s1 p1 R", "64>128 k3 s3 p1", "128>128 k3 s1 p1 R",
    "128>128 k3 s1 p1 R", "128>256 k3 s3,2 p1", "256>256 k3 s1 p1 R", "256>256 k3 s1 p1 R",
    "256>512 k3 s1 p0", "512>512 k1 s1 p0",
]
# 17 layers, 1024-d: syncnet_v2_1024, syncnet384 (LeakyReLU, last two ReLU), wav2lip_sam, wav2lip384 (all ReLU)
AUDIO_ENCODER_1024 = [
    "1>32 k3 s1 p1", "32>32 k3 s1 p1 R", "32>32 k3 s1 p1 R", "32>64 k3 s3,1 p1",
    "64>64 k3 s1 p1 R", "64>64 k3 s1 p1 R", "64>128 k3 s3 p1", "128>128 k3 s1 p1 R",
    "128>128 k3 s1 p1 R", "128>256 k3 s3,2 p1", "256>256 k3 s1 p1 R", "256>256 k3 s1 p1 R",
    "256>512 k3 s1 p1", "512>512 k3 s1 p1 R", "512>512 k3 s1 p1 R", "512>1024 k3 s1 p0 [relu]",
    "1024>1024 k1 s1 p0 [relu]",
]

# Generators ------------------------------------------------------------------------------------------
WAV2LIP96 = {
    "face_encoder_blocks": [
        "6>16 k7 s1 p3",
        "16>32 k3 s2 p1; 32>32 k3 s1 p1 R; 32>32 k3 s1 p1 R",
        "32>64 k3 s2 p1; 64>64 k3 s1 p1 R; 64>64 k3 s1 p1 R; 64>64 k3 s1 p1 R",
        "64>128 k3 s2 p1; 128>128 k3 s1 p1 R; 128>128 k3 s1 p1 R",
        "128>256 k3 s2 p1; 256>256 k3 s1 p1 R; 256>256 k3 s1 p1 R",
        "256>512 k3 s2 p1; 512>512 k3 s1 p1 R",
        "512>512 k3 s1 p0; 512>512 k1 s1 p0",
    ],
    "audio_encoder": AUDIO_ENCODER_GENERATOR,
    "face_decoder_blocks": [
        "512>512 k1 s1 p0",
        "T1024>512 k3 s1 p0; 512>512 k3 s1 p1 R",
        "T1024>512 k3 s2 p1 op1; 512>512 k3 s1 p1 R; 512>512 k3 s1 p1 R",
        "T768>384 k3 s2 p1 op1; 384>384 k3 s1 p1 R; 384>384 k3 s1 p1 R",
        "T512>256 k3 s2 p1 op1; 256>256 k3 s1 p1 R; 256>256 k3 s1 p1 R",
        "T320>128 k3 s2 p1 op1; 128>128 k3 s1 p1 R; 128>128 k3 s1 p1 R",
        "T160>64 k3 s2 p1 op1; 64>64 k3 s1 p1 R; 64>64 k3 s1 p1 R",
    ],
    "output_block": "80>32 k3 s1 p1; P32>3 k1 s1 p0",
}

# primepake wav2lipv2 (HEAD uses ReLU; the 2021 build has the same table with PReLU everywhere)
WAV2LIP288 = {
    "face_encoder_blocks": [
        "6>16 k7 s1 p3",
        "16>32 k5 s2 p2; 32>32 k3 s1 p1 R",
        "32>32 k3 s2 p1; 32>32 k3 s1 p1 R; 32>32 k3 s1 p1 R",
        "32>64 k3 s2 p1; 64>64 k3 s1 p1 R; 64>64 k3 s1 p1 R; 64>64 k3 s1 p1 R",
        "64>128 k3 s2 p1; 128>128 k3 s1 p1 R; 128>128 k3 s1 p1 R",
        "128>256 k3 s2 p1; 256>256 k3 s1 p1 R; 256>256 k3 s1 p1 R",
        "256>512 k3 s2 p1; 512>512 k3 s1 p1 R",
        "512>512 k3 s1 p0; 512>512 k1 s1 p0",
        "512>512 k3 s1 p0; 512>512 k1 s1 p0",
    ],
    "audio_encoder": AUDIO_ENCODER_GENERATOR,
    "face_decoder_blocks": [
        "512>512 k1 s1 p0",
        "T1024>512 k3 s1 p0; 512>512 k3 s1 p1 R",
        "T1024>512 k3 s2 p1; 512>512 k3 s1 p1 R; 512>512 k3 s1 p1 R",
        "T1024>512 k3 s2 p1; 512>512 k3 s1 p1 R; 512>512 k3 s1 p1 R",
        "T768>384 k3 s2 p1 op1; 384>384 k3 s1 p1 R; 384>384 k3 s1 p1 R",
        "T512>256 k3 s2 p1 op1; 256>256 k3 s1 p1 R; 256>256 k3 s1 p1 R",
        "T320>128 k3 s2 p1 op1; 128>128 k3 s1 p1 R; 128>128 k3 s1 p1 R",
        "T160>64 k3 s2 p1 op1; 64>64 k3 s1 p1 R; 64>64 k3 s1 p1 R",
        "T96>64 k3 s2 p1 op1; 64>64 k3 s1 p1 R; 64>64 k3 s1 p1 R",
    ],
    "output_block": "80>32 k3 s1 p1; P32>3 k1 s1 p0",
}

# primepake sam.py Wav2Lip_SAM built with audio_refine (8 encoder / 8 decoder blocks, SAM attention)
WAV2LIP_SAM = {
    "face_encoder_blocks": [
        "6>16 k7 s1 p3; 16>16 k3 s1 p1 R; 16>16 k3 s1 p1 R; 16>16 k3 s1 p1 R",
        "16>32 k3 s2 p1; 32>32 k3 s1 p1 R; 32>32 k3 s1 p1 R; 32>32 k3 s1 p1 R",
        "32>64 k3 s2 p1; 64>64 k3 s1 p1 R; 64>64 k3 s1 p1 R; 64>64 k3 s1 p1 R",
        "64>128 k3 s2 p1; 128>128 k3 s1 p1 R; 128>128 k3 s1 p1 R; 128>128 k3 s1 p1 R",
        "128>256 k3 s2 p1; 256>256 k3 s1 p1 R; 256>256 k3 s1 p1 R; 256>256 k3 s1 p1 R",
        "256>512 k3 s2 p1; 512>512 k3 s1 p1 R; 512>512 k3 s1 p1 R; 512>512 k3 s1 p1 R",
        "512>1024 k3 s2 p1; 1024>1024 k3 s1 p1 R; 1024>1024 k3 s1 p1 R; 1024>1024 k3 s1 p1 R",
        "1024>1024 k3 s1 p0; 1024>1024 k1 s1 p0; 1024>1024 k1 s1 p0",
    ],
    "audio_encoder": AUDIO_ENCODER_1024,
    "audio_refine": "1024>1024 k1 s1 p0; 1024>1024 k1 s1 p0",
    "face_decoder_blocks": [
        "1024>1024 k1 s1 p0",
        "T2048>1024 k3 s1 p0; 1024>1024 k3 s1 p1 R",
        "T2048>1024 k3 s2 p1 op1; 1024>1024 k3 s1 p1 R; 1024>1024 k3 s1 p1 R",
        "T1536>768 k3 s2 p1 op1; 768>768 k3 s1 p1 R; 768>768 k3 s1 p1 R",
        "T1024>512 k3 s2 p1 op1; 512>512 k3 s1 p1 R; 512>512 k3 s1 p1 R",
        "T640>256 k3 s2 p1 op1; 256>256 k3 s1 p1 R; 256>256 k3 s1 p1 R",
        "T320>128 k3 s2 p1 op1; 128>128 k3 s1 p1 R; 128>128 k3 s1 p1 R",
        "T160>64 k3 s2 p1 op1; 64>64 k3 s1 p1 R; 64>64 k3 s1 p1 R",
    ],
    "output_block": "80>32 k3 s1 p1; P32>3 k1 s1 p0",
}

# primepake sam.py Wav2Lip_384 built with audio_refine (9 encoder / 9 decoder blocks, Tanh output)
WAV2LIP384 = {
    "face_encoder_blocks": [
        "6>8 k7 s1 p3",
        "8>16 k3 s2 p1; 16>16 k3 s1 p1 R; 16>16 k3 s1 p1 R",
        "16>32 k3 s2 p1; 32>32 k3 s1 p1 R; 32>32 k3 s1 p1 R",
        "32>64 k3 s2 p1; 64>64 k3 s1 p1 R; 64>64 k3 s1 p1 R",
        "64>128 k3 s2 p1; 128>128 k3 s1 p1 R; 128>128 k3 s1 p1 R",
        "128>256 k3 s2 p1; 256>256 k3 s1 p1 R; 256>256 k3 s1 p1 R",
        "256>512 k3 s2 p1; 512>512 k3 s1 p1 R; 512>512 k3 s1 p1 R",
        "512>1024 k3 s2 p1; 1024>1024 k3 s1 p1 R; 1024>1024 k3 s1 p1 R",
        "1024>1024 k3 s1 p0; 1024>1024 k1 s1 p0",
    ],
    "audio_encoder": AUDIO_ENCODER_1024,
    "audio_refine": "1024>1024 k1 s1 p0; 1024>1024 k1 s1 p0",
    "face_decoder_blocks": [
        "1024>1024 k1 s1 p0",
        "T2048>1024 k3 s1 p0; 1024>1024 k3 s1 p1 R",
        "T2048>1024 k3 s2 p1 op1; 1024>1024 k3 s1 p1 R; 1024>1024 k3 s1 p1 R",
        "T1536>768 k3 s2 p1 op1; 768>768 k3 s1 p1 R; 768>768 k3 s1 p1 R",
        "T1024>512 k3 s2 p1 op1; 512>512 k3 s1 p1 R; 512>512 k3 s1 p1 R",
        "T640>256 k3 s2 p1 op1; 256>256 k3 s1 p1 R; 256>256 k3 s1 p1 R",
        "T320>128 k3 s2 p1 op1; 128>128 k3 s1 p1 R; 128>128 k3 s1 p1 R",
        "T160>80 k3 s2 p1 op1; 80>80 k3 s1 p1 R; 80>80 k3 s1 p1 R",
        "T96>64 k3 s2 p1 op1; 64>64 k3 s1 p1 R; 64>64 k3 s1 p1 R",
    ],
    "output_block": "72>32 k3 s1 p1; P32>3 k1 s1 p0",
}

# SyncNets (face encoder, audio encoder; both end in a C x 1 x 1 map) ----------------------------------
SYNCNET96 = {
    "face_encoder": [
        "15>32 k7 s1 p3", "32>64 k5 s1,2 p1", "64>64 k3 s1 p1 R", "64>64 k3 s1 p1 R",
        "64>128 k3 s2 p1", "128>128 k3 s1 p1 R", "128>128 k3 s1 p1 R", "128>128 k3 s1 p1 R",
        "128>256 k3 s2 p1", "256>256 k3 s1 p1 R", "256>256 k3 s1 p1 R", "256>512 k3 s2 p1",
        "512>512 k3 s1 p1 R", "512>512 k3 s1 p1 R", "512>512 k3 s2 p1", "512>512 k3 s1 p0",
        "512>512 k1 s1 p0",
    ],
    "audio_encoder": AUDIO_ENCODER_SYNCNET,
}

SYNCNET_V2_1024 = {
    "face_encoder": [
        "15>32 k7 s1 p3", "32>64 k5 s1,2 p1", "64>64 k3 s1 p1 R", "64>64 k3 s1 p1 R",
        "64>128 k3 s2 p1", "128>128 k3 s1 p1 R", "128>128 k3 s1 p1 R", "128>128 k3 s1 p1 R",
        "128>256 k3 s2 p1", "256>256 k3 s1 p1 R", "256>256 k3 s1 p1 R", "256>512 k3 s2 p1",
        "512>512 k3 s1 p1 R", "512>512 k3 s1 p1 R", "512>1024 k3 s2 p1", "1024>1024 k3 s1 p1 R",
        "1024>1024 k3 s1 p1 R", "1024>1024 k3 s2 p1 [relu]", "1024>1024 k3 s1 p0 [relu]",
        "1024>1024 k1 s1 p0 [relu]",
    ],
    "audio_encoder": AUDIO_ENCODER_1024,
}

SYNCNET288_PRELU2021 = {
    "face_encoder": [
        "15>32 k7 s1 p3", "32>32 k5 s1 p1", "32>32 k3 s1 p1", "32>64 k5 s1,2 p1",
        "64>64 k3 s1 p1 R", "64>64 k3 s1 p1 R", "64>128 k3 s2 p1", "128>128 k3 s1 p1 R",
        "128>128 k3 s1 p1 R", "128>128 k3 s1 p1 R", "128>256 k3 s2 p1", "256>256 k3 s1 p1 R",
        "256>256 k3 s1 p1 R", "256>512 k3 s2 p1", "512>512 k3 s1 p1 R", "512>512 k3 s1 p1 R",
        "512>512 k3 s2 p1", "512>512 k3 s2 p0", "512>512 k3 s1 p0", "512>512 k2 s1 p0",
        "512>512 k1 s1 p0",
    ],
    "audio_encoder": AUDIO_ENCODER_SYNCNET,
}

SYNCNET384 = {
    "face_encoder": [
        "15>16 k7 s1 p3", "16>32 k5 s1,2 p1", "32>32 k3 s1 p1 R", "32>32 k3 s1 p1 R",
        "32>64 k3 s2 p1", "64>64 k3 s1 p1 R", "64>64 k3 s1 p1 R", "64>128 k3 s2 p1",
        "128>128 k3 s1 p1 R", "128>128 k3 s1 p1 R", "128>256 k3 s2 p1", "256>256 k3 s1 p1 R",
        "256>256 k3 s1 p1 R", "256>512 k3 s2 p1", "512>512 k3 s1 p1 R", "512>512 k3 s1 p1 R",
        "512>1024 k3 s2 p1", "1024>1024 k3 s1 p1 R", "1024>1024 k3 s1 p1 R", "1024>1024 k3 s2 p1",
        "1024>1024 k3 s1 p0", "1024>1024 k1 s1 p0 [relu]",
    ],
    "audio_encoder": AUDIO_ENCODER_1024,
}

# Visual-quality discriminators (lower half of the face) ----------------------------------------------
DISC_QUAL96 = {
    "face_encoder_blocks": [
        "N3>32 k7 s1 p3",
        "N32>64 k5 s1,2 p2; N64>64 k5 s1 p2",
        "N64>128 k5 s2 p2; N128>128 k5 s1 p2",
        "N128>256 k5 s2 p2; N256>256 k5 s1 p2",
        "N256>512 k3 s2 p1; N512>512 k3 s1 p1",
        "N512>512 k3 s2 p1; N512>512 k3 s1 p1",
        "N512>512 k3 s1 p0; N512>512 k1 s1 p0",
    ],
    "binary_pred": "P512>1 k1 s1 p0",
}

DISC_QUAL288 = {
    "face_encoder_blocks": [
        "N3>32 k7 s1 p3",
        "N32>64 k5 s1,2 p2; N64>64 k5 s1 p2",
        "N64>128 k5 s2 p2; N128>128 k5 s1 p2",
        "N128>128 k5 s2 p2; N128>128 k5 s1 p2",
        "N128>256 k5 s2 p2; N256>256 k5 s1 p2",
        "N256>256 k5 s2 p2; N256>256 k5 s1 p2",
        "N256>512 k3 s2 p1; N512>512 k3 s1 p1",
        "N512>512 k3 s2 p1; N512>512 k3 s1 p1",
        "N512>512 k3 s1 p0; N512>512 k1 s1 p0",
    ],
    "binary_pred": "P512>1 k1 s1 p0",
}

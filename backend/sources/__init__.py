"""Where speech enters `serve`: queued files, PCM streamed over the local API, a microphone.

Every source converts to 16 kHz mono float32 at its edge and appends to an `Utterance` of the one
`SpeechQueue`; the live loop is the only consumer.
"""

"""Pure encoders and decoders: DER in, values out; values in, DER out. No I/O, time is an argument."""

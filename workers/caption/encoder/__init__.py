"""The sentence encoder under the v2/v3 caption models: the network (`network`), its packaged
base weights and tokenizer (`files`), and smoothed int8 quantisation (`quantize`). torch."""

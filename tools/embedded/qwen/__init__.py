"""Build, train and measure the Qwen-Image-class embedded model (repository tools, in no wheel)."""

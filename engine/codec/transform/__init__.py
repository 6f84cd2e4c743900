"""The transform: the CDF 9/7 wavelet by lifting (wavelet) and format 9's inter-scale predict step on its finest
level (interscale). Imports nothing else of the codec."""

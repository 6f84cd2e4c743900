"""The transform: the CDF 9/7 wavelet by lifting (wavelet). Imports nothing else of the codec."""

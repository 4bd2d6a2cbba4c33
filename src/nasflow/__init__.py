"""nasflow: Neural Architecture Search for PyTorch."""

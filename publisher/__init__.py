"""Publishing daemon: queue folder → review → every channel exactly once → lag report."""

__version__ = "0.1.0"

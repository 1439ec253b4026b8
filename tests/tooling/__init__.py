"""The tools, the experiment runner and README's commands."""

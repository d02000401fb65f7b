"""Tables and paper-style figures from result files; no simulation logic.

Plot functions take a DataFrame and return a matplotlib Figure; `gemini-ft plot` saves them as PNG
and PDF, and `gemini-ft report` rebuilds every figure from the presets into one HTML page.
Nothing imports this package.
"""

"""The web page at `/`: a reference client of the public API, served as static files.

The page is plain ES modules (`static/`) with vendored builds of two npm packages
(`static/vendor/`, refreshed by `vendor.sh`); nothing here renders a job on the server. The API
serves the files, the page's configuration (how to sign in, the workflow's default denoise, the
upload limit) and, in `restoration dev` only, a dev token (`router.py`).
"""

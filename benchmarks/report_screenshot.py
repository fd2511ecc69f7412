"""Render the diagnostic report's HTML in headless Chromium and save a screenshot to look at.

Writes the report of a saved posterior (``bayes-glmhmm report``), opens ``report.html`` in a real
browser (Debian's ``chromium``, ``apt-get install chromium``) and writes a full-page screenshot
beside it, ``report_screenshot.png``. Also checks that the HTML is self-contained: no ``src`` or
``href`` that points outside the file. Without a posterior file it fits a small one first.

Usage::

    python benchmarks/report_screenshot.py [POSTERIOR.nc] [--out DIR] [--height 3000]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time


def _small_posterior(path: str) -> str:
    import numpyro

    numpyro.set_host_device_count(2)
    import jax

    from bayes_glmhmm import article_data, fit_nuts, write_netcdf_atomic

    data = article_data(jax.random.PRNGKey(3), num_sequences=4, num_timesteps=60)
    posterior = fit_nuts(
        data.inputs, data.emissions, 3, num_chains=2, num_warmup=100, num_samples=100, seed=1, progress_bar=False
    )
    return write_netcdf_atomic(posterior.to_arviz(), path)


def find_chromium() -> str | None:
    """Path of a Chromium (or Chrome) executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(html_path: str, png_path: str, width: int = 1400, height: int = 3000, timeout: float = 120) -> str:
    """Render ``html_path`` in headless Chromium and write a ``width`` x ``height`` screenshot.

    Returns:
        The screenshot's path.

    Raises:
        RuntimeError: when no Chromium is installed or it wrote no screenshot.
    """
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("no chromium found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={os.path.abspath(png_path)}",
            f"--window-size={width},{height}",
            "file://" + os.path.abspath(html_path),
        ]
        subprocess.run(command, check=False, capture_output=True, timeout=timeout)
    if not os.path.exists(png_path) or os.path.getsize(png_path) == 0:
        raise RuntimeError(f"chromium wrote no screenshot to {png_path}")
    return png_path


def external_references(html_text: str) -> list[str]:
    """Every ``src=``/``href=`` of the HTML that is neither an embedded data URI nor an in-page anchor."""
    references = re.findall(r'(?:src|href)="([^"]*)"', html_text)
    return [ref for ref in references if not ref.startswith(("data:", "#"))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("posterior", nargs="?", help="InferenceData netCDF (default: fit a small one)")
    parser.add_argument("--out", default=os.path.join("results", "benchmarks", "report_screenshot"))
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args(argv)

    from bayes_glmhmm.report import write_report

    os.makedirs(args.out, exist_ok=True)
    posterior = args.posterior or _small_posterior(os.path.join(args.out, "small_posterior.nc"))
    start = time.perf_counter()
    paths = write_report(posterior, args.out)
    report_seconds = time.perf_counter() - start
    with open(paths["html"], encoding="utf-8") as handle:
        external = external_references(handle.read())
    start = time.perf_counter()
    png = screenshot(paths["html"], os.path.join(args.out, "report_screenshot.png"), height=args.height)
    print(
        f"report {report_seconds:.1f} s, {os.path.getsize(paths['html']) / 1e6:.2f} MB HTML, "
        f"external references: {external or 'none'}; screenshot {time.perf_counter() - start:.1f} s -> {png}"
    )
    return 1 if external else 0


if __name__ == "__main__":
    sys.exit(main())

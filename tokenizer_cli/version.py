"""The package's version, a leaf module so that the modules recording it (token manifests) need not import the
package itself. Keep it equal to pyproject.toml's."""

__version__ = "0.2.0"

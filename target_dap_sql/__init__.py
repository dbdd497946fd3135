"""target-dap-sql: a Singer target keeping the database `dap initdb` / `dap syncdb` would keep."""

__all__ = ["__version__"]
__version__ = "0.1.0"

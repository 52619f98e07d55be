"""The job store: tables, engines and migrations, jobs, tenants and the tenant folders."""

"""The Backup center (SPEC 7): the portfolio of every vault, protected items across vaults,
and the dashboard. The site's one room that reads across the apps: the rest of portal is the
kernel (gate, audit, approvals, roles, clock, alerts, ...), which imports no app, and this
package imports the apps' selectors and models. Nothing in portal imports it but the root
URLconf, by name.
"""

"""The consortia service: consortium drafts, invitations, live rule checks on the real roster, outcomes."""

"""Review of reply drafts: the database rules (``schema``), the actions a reviewer takes
(``actions``) and what a reviewer reads (``queue``)."""

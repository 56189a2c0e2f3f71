// Tests come in the following commits.

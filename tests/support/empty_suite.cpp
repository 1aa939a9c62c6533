// Stands in for a test folder that has no tests yet, so the build stays whole.

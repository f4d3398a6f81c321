"""The `cellpoint` subcommands that need the training extra: labels, train, evaluate."""

from cellpoint.runtime.cli import main

main()

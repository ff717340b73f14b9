from edgeback_dedup.main import main

main()

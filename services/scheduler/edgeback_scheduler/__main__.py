from edgeback_scheduler.main import main

main()

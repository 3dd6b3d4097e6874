"""lstmconv.sources"""

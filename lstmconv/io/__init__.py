"""lstmconv.io"""
